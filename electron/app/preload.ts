/**
 * The renderer's only way to Braid: `window.braid` with `call` and `on` (PreloadApi), nothing else
 * of ipcRenderer. A sandboxed preload can require only 'electron' and a few builtins, so the
 * contract is imported for its types only and the channel names are copied (typed against it).
 */
import { contextBridge, ipcRenderer } from 'electron';
import type { CommandName, EventName, Events, IPC as ContractIpc, ParamsOf, PreloadApi, ResultOf } from '../core/contract';

const CALL: (typeof ContractIpc)['call'] = 'braid:call';
const EVENT: (typeof ContractIpc)['event'] = 'braid:event';

type Reply = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

const listeners = new Map<string, Set<(data: unknown) => void>>();

ipcRenderer.on(EVENT, (_event, frame: { event?: unknown; data?: unknown }) => {
  const set = typeof frame?.event === 'string' ? listeners.get(frame.event) : undefined;
  if (!set) return;
  for (const listener of [...set]) {
    try {
      listener(frame.data);
    } catch (err) {
      console.error('braid: an event listener threw', err);
    }
  }
});

const api: PreloadApi = {
  async call<C extends CommandName>(command: C, params: ParamsOf<C>): Promise<ResultOf<C>> {
    if (typeof command !== 'string') throw { code: 'ECOMMAND', message: 'command must be a string' };
    const reply = (await ipcRenderer.invoke(CALL, command, params ?? {})) as Reply | undefined;
    if (reply && reply.ok === true) return reply.result as ResultOf<C>;
    // A plain object survives the context bridge intact; an Error would lose its code.
    throw { code: reply?.error?.code ?? 'EIPC', message: reply?.error?.message ?? 'no answer from the main process' };
  },
  on<E extends EventName>(event: E, listener: (data: Events[E]) => void): () => void {
    if (typeof event !== 'string' || typeof listener !== 'function') throw new TypeError('braid.on(event: string, listener: function)');
    const fn = listener as (data: unknown) => void;
    const set = listeners.get(event) ?? new Set<(data: unknown) => void>();
    listeners.set(event, set);
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  },
};

contextBridge.exposeInMainWorld('braid', api);
