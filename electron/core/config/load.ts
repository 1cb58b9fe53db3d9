import fs from 'node:fs';
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
