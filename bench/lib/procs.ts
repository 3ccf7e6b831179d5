import { type ChildProcess, fork } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * Every process the bench starts (servers, generators) is registered here, so that whatever
 * way the bench ends (done, Ctrl-C, SIGTERM, a harness error) none is left running.
 */
const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Temporary directories (a server's data copy can be 700 MB): removed however the bench ends. */
const dirs = new Set<string>();

export function trackDir(dir: string): string {
  dirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Last resort, synchronous (works inside 'exit' handlers): SIGKILL whatever is left and
 * remove the temporary directories. */
export function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

/** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILL. Resolves once it is gone. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

let installed = false;
/** Kills the children on every way out of the bench process. */
export function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      console.error(`\n${signal}: stopping the servers and generators`);
      killAll();
      process.exit(130);
    });
  }
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

/**
 * A forked bench process (generator, plain Aedes) driven over IPC: `call(method, args)` is
 * answered by the `serve` side in that process. Structured-clone serialization, so Maps and
 * typed arrays travel as they are.
 */
export class Worker {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; method: string }>();
  readonly child: ChildProcess;
  /** Messages the child sends on its own (not replies), e.g. the Aedes child's port. */
  onEvent: (event: unknown) => void = () => {};
  exitReason: string | null = null;

  /** `onOutput`: receives the child's stdout and stderr lines instead of the terminal.
   * `execArgv`: Node options for the child (default: this process's, as `fork` does). */
  constructor(script: string, args: string[] = [], readonly name = script, onOutput?: (line: string) => void, execArgv?: string[]) {
    const stdio = onOutput ? 'pipe' : 'inherit';
    this.child = track(fork(script, args, { serialization: 'advanced', stdio: ['ignore', stdio, stdio, 'ipc'], ...(execArgv ? { execArgv } : {}) }));
    if (onOutput) {
      for (const stream of [this.child.stdout, this.child.stderr]) if (stream) createInterface({ input: stream }).on('line', onOutput);
    }
    this.child.on('message', (msg: unknown) => {
      const reply = msg as Partial<Reply>;
      if (typeof reply.id === 'number' && typeof reply.ok === 'boolean') {
        const p = this.pending.get(reply.id);
        if (!p) return;
        this.pending.delete(reply.id);
        if (reply.ok) p.resolve(reply.result);
        else p.reject(new Error(`${this.name} ${p.method}: ${reply.error}`));
      } else {
        this.onEvent(msg);
      }
    });
    this.child.once('exit', (code, signal) => {
      this.exitReason = signal ? `killed by ${signal}` : `exited with code ${code}`;
      for (const p of this.pending.values()) p.reject(new Error(`${this.name} ${p.method}: process ${this.exitReason}`));
      this.pending.clear();
    });
  }

  call<T>(method: string, args: unknown = {}): Promise<T> {
    if (this.exitReason) return Promise.reject(new Error(`${this.name} ${method}: process ${this.exitReason}`));
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, method });
      this.child.send({ id, method, args });
    });
  }

  stop(): Promise<void> {
    return stopChild(this.child, 'SIGTERM', 3000);
  }
}

/** The child side: answers `call`s with `handlers`; exits when the parent goes away. */
export function serve(handlers: Record<string, (args: never) => unknown>): void {
  process.on('message', (msg: { id: number; method: string; args: unknown }) => {
    const handler = handlers[msg.method];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`unknown method ${msg.method}`);
        return handler(msg.args as never);
      })
      .then(
        (result) => process.send?.({ id: msg.id, ok: true, result }),
        (err: unknown) => process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? err.stack ?? err.message : String(err) }),
      );
  });
  // The parent died or closed the channel: nothing left to do here.
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  // Ctrl-C reaches the whole process group; the parent decides what happens.
  process.on('SIGINT', () => {});
}
