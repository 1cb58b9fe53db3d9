/**
 * Running Braid's own code as another (unprivileged) user, wherever the clone lives. A CI clone or
 * a developer's checkout can sit under a directory only root may enter (mktemp -d is 0700), where
 * user nobody cannot reach dist/ at all. Then the repository is bind-mounted at a path anyone can
 * traverse, inside a private mount namespace of the command alone (`unshare -m`): nothing changes
 * for anything else on the machine, and nothing is left to undo but an empty directory.
 */
import fs from 'node:fs';
import path from 'node:path';

export const NOBODY = 65534;

/** The repository root: dist/test/helpers -> ../../.. */
export const REPO = path.resolve(__dirname, '..', '..', '..');

/** Whether `uid` (not in any group of the owners) can traverse every directory down to `dir`. */
function reachableByOthers(dir: string): boolean {
  let d = dir;
  for (let i = 0; i < 64; i++) {
    try {
      if ((fs.statSync(d).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const up = path.dirname(d);
    if (up === d) return true;
    d = up;
  }
  return false;
}

let mountPoint: string | null = null;

export interface RepoForUser {
  /** Where the repository is, as the prefixed command sees it. */
  root: string;
  /** Goes before the command (after `ip netns exec NS` or `nsenter`, before `setpriv`). */
  prefix: string[];
}

/** How a command run as another user sees the repository. */
export function repoForUser(): RepoForUser {
  if (reachableByOthers(REPO)) return { root: REPO, prefix: [] };
  if (!mountPoint) {
    mountPoint = `/run/braid-test-repo-${process.pid}`;
    fs.mkdirSync(mountPoint, { recursive: true, mode: 0o755 });
    fs.chmodSync(mountPoint, 0o755);
    const mp = mountPoint;
    process.once('exit', () => {
      try {
        fs.rmdirSync(mp);
      } catch {
        /* still mounted in a namespace that is going away: removed by the next run's cleanup of /run */
      }
    });
  }
  return {
    root: mountPoint,
    prefix: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount --bind '${REPO}' '${mountPoint}' && exec "$@"`, 'braid-test-as-user'],
  };
}

/** The CLI as another user sees it. */
export function cliForUser(r: RepoForUser): string {
  return path.join(r.root, 'dist', 'electron', 'core', 'cli', 'main.js');
}
