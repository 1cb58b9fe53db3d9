import fs from 'node:fs';
import path from 'node:path';
import { BraidError, errorMessage } from '../errors';
import { BraidConfig, ConfigInput, mergeConfigInput, validateConfig } from './schema';

/** Reads a JSON config file without validating it (validation happens after merging flags). */
export function readConfigFile(file: string): ConfigInput {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new BraidError('ECONFIG', `cannot read config file ${file}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return JSON.parse(text) as ConfigInput;
  } catch (err) {
    throw new BraidError('ECONFIG', `config file ${file} is not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
}

/** Defaults, then the file (if any), then flags: later wins. */
export function loadConfig(opts: { file?: string; overrides?: ConfigInput }): BraidConfig {
  const fromFile = opts.file ? readConfigFile(opts.file) : {};
  if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
    throw new BraidError('ECONFIG', `config file ${opts.file} must hold a JSON object`);
  }
  return validateConfig(mergeConfigInput(fromFile, opts.overrides ?? {}));
}

/**
 * Changes the config file in place (creating it if needed): the change is validated together with
 * the rest of the file before anything is written, and the write is atomic, so a running Braid
 * that watches the file never reads half of it.
 */
export function updateConfigFile(file: string, change: (input: ConfigInput) => ConfigInput): BraidConfig {
  const current = fs.existsSync(file) ? readConfigFile(file) : {};
  const next = change(current);
  const validated = validateConfig(next);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
  return validated;
}

/** Calls `onChange` with the new config whenever the file changes and still validates. */
export function watchConfigFile(file: string, onChange: (cfg: BraidConfig) => void, onError: (err: unknown) => void): () => void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  let timer: NodeJS.Timeout | null = null;
  // Watch the directory: an atomic rename replaces the file's inode, which a file watch would lose.
  const watcher = fs.watch(dir, (_event, name) => {
    if (name !== null && name !== path.basename(file)) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      try {
        onChange(loadConfig({ file }));
      } catch (err) {
        onError(err);
      }
    }, 50);
  });
  watcher.unref();
  return () => {
    if (timer) clearTimeout(timer);
    watcher.close();
  };
}
