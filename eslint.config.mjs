// Lint: ESLint's and typescript-eslint's recommended rules, type-aware (promises nobody awaits,
// awaiting what is not a promise, unsafe `any` in the hook's own code). Formatting is Prettier's
// alone: eslint-config-prettier turns off the rules that would fight it.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import prettier from 'eslint-config-prettier'

const node = Object.fromEntries(
  [
    'process',
    'console',
    'Buffer',
    'setTimeout',
    'clearTimeout',
    'setInterval',
    'clearInterval',
    'setImmediate',
    'URL',
    'AbortController',
    'TextDecoder',
    'TextEncoder',
    'performance'
  ].map((g) => [g, 'readonly'])
)

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/tmp/', '.testenv/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  { languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } } },
  // A leading underscore marks what is unused on purpose (a destructured field dropped, a required parameter).
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }
      ],
      // Passing on a caught value as it came (its type is unknown) is not inventing a non-Error.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }]
    }
  },
  {
    files: ['**/*.mjs', '**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { ...node, module: 'writable', require: 'readonly', __dirname: 'readonly' }
    }
  },
  { files: ['**/*.js', '**/*.cjs'], rules: { '@typescript-eslint/no-require-imports': 'off' } },
  {
    // Tests read JSON the hook wrote and drive mocks: `any` there is the data under test, not a
    // hole in the hook's types. The promise rules stay on (a test that forgets to await passes).
    files: ['test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-require-imports': 'off'
    }
  },
  prettier
)
