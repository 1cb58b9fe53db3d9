/** Where Braid keeps its config and the state that must outlive a crash, per platform convention. */
import os from 'node:os';
import path from 'node:path';

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.BRAID_STATE_DIR) return env.BRAID_STATE_DIR;
  if (platform === 'win32') return path.join(env.LOCALAPPDATA ?? path.join(os.homedir(), 'AppData', 'Local'), 'Braid');
  if (platform === 'darwin') return path.join(os.homedir(), 'Library', 'Application Support', 'Braid');
  return path.join(env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state'), 'braid');
}

/** The config file used when none is given: `$XDG_CONFIG_HOME/braid/config.json` and the like. */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.BRAID_CONFIG) return env.BRAID_CONFIG;
  if (platform === 'win32') return path.join(env.APPDATA ?? path.join(os.homedir(), 'AppData', 'Roaming'), 'Braid', 'config.json');
  if (platform === 'darwin') return path.join(os.homedir(), 'Library', 'Application Support', 'Braid', 'config.json');
  return path.join(env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'braid', 'config.json');
}
