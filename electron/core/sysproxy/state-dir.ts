/** Where Braid keeps state that must outlive a crash (the system-proxy journal), per platform convention. */
import os from 'node:os';
import path from 'node:path';

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.BRAID_STATE_DIR) return env.BRAID_STATE_DIR;
  if (platform === 'win32') return path.join(env.LOCALAPPDATA ?? path.join(os.homedir(), 'AppData', 'Local'), 'Braid');
  if (platform === 'darwin') return path.join(os.homedir(), 'Library', 'Application Support', 'Braid');
  return path.join(env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state'), 'braid');
}
