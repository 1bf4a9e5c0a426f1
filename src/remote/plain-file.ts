// Files a remote script opens by a name the job could have planted something at (it is root on
// the VM): a FIFO there would block the open, a symlink would redirect it.

/**
 * A shell command that leaves at `path` (one shell word: quoted, or a quoted "$variable") a regular
 * file or nothing: anything else is removed, never opened. Nothing there forks nothing.
 */
export const plainFileOnly = (path: string): string =>
  `{ { [ ! -e ${path} ] && [ ! -L ${path} ]; } || { [ -f ${path} ] && [ ! -L ${path} ]; } || rm -rf ${path}; }`
