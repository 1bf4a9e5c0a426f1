// Unit tests run alone with `--selectProjects unit`; integration and conformance need scripts/test.sh's environment.
const common = {
  preset: 'ts-jest',
  testEnvironment: '<rootDir>/test/helpers/handle-check-env.ts',
  transform: { '^.+\\.ts$': ['ts-jest', {}] }
}
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: [
        '<rootDir>/test/integration/**/*.test.ts',
        '<rootDir>/test/conformance/**/*.test.ts',
        '<rootDir>/test/e2e/**/*.test.ts',
        '<rootDir>/test/adversarial/**/*.test.ts',
        // the short chaos soak (npm run soak runs the long one)
        '<rootDir>/test/soak/**/*.test.ts'
      ]
    }
  ],
  testTimeout: 120000,
  testSequencer: '<rootDir>/test/helpers/long-first-sequencer.js'
}
