// What an interrupted run (Ctrl-C, SIGTERM) must undo before it exits: stop
// the child commands, stop the throwaway servers, remove their directories,
// and leave no process of its own behind.
//
// Every process that starts servers or children registers its cleanups
// here. On the first SIGINT or SIGTERM the cleanups run, newest first (a
// command's children stop before the server they use), each bounded in
// time; then every process that was below this one when the signal came
// and is still alive is terminated, and the process exits 128 + the signal's
// number. Processes are found through /proc, so that grandchildren orphaned
// by a child that died at once (as `deno test` does on Ctrl-C) are found
// too.

/** The signals that interrupt a run. */
export type InterruptSignal = "SIGINT" | "SIGTERM";

const SIGNAL_NUMBER: Record<InterruptSignal, number> = { SIGINT: 2, SIGTERM: 15 };

/** One cleanup; it is given the signal that interrupted the run. */
export type Cleanup = (signal: InterruptSignal) => Promise<void>;

const cleanups: Cleanup[] = [];
const paths = new Set<string>();
let handling = false;

const listeners: Record<InterruptSignal, () => void> = {
  SIGINT: () => handle("SIGINT"),
  SIGTERM: () => handle("SIGTERM"),
};

function handle(signal: InterruptSignal): void {
  if (handling) return; // the first signal's cleanup is already bounded
  handling = true;
  const below = descendants(Deno.pid);
  console.error(`[interrupt] ${signal}: stopping child processes and removing temporary files`);
  (async () => {
    for (const cleanup of cleanups.slice().reverse()) {
      await withTimeout(cleanup(signal), 40_000).catch((error) =>
        console.error(`[interrupt] a cleanup failed: ${error?.message ?? error}`)
      );
    }
    await terminate(below);
    for (const path of paths) await Deno.remove(path, { recursive: true }).catch(() => {});
  })().finally(() => Deno.exit(128 + SIGNAL_NUMBER[signal]));
}

/**
 * Exits with `code`; while an interrupt is being handled, waits for its
 * handler instead, which exits once everything below has ended. A tool's
 * main flow ends this way, so that a child that ends early on the signal
 * does not let the tool exit before the sweep.
 */
export async function exit(code: number): Promise<never> {
  await notInterrupted();
  Deno.exit(code);
}

/**
 * Resolves at once, unless an interrupt is being handled: then never (its
 * handler exits). Starting a child or a server waits on it, so that a main
 * flow that goes on after its child ended on the signal starts nothing new.
 */
export async function notInterrupted(): Promise<void> {
  if (handling) await new Promise(() => {});
}

/**
 * Registers `cleanup` to run when SIGINT or SIGTERM interrupts this process.
 *
 * @returns A function that unregisters it (the signal listeners go with the last one).
 */
export function onInterrupt(cleanup: Cleanup): () => void {
  if (cleanups.length === 0) {
    for (const [signal, listener] of Object.entries(listeners)) {
      Deno.addSignalListener(signal as InterruptSignal, listener);
    }
  }
  cleanups.push(cleanup);
  return () => {
    const index = cleanups.indexOf(cleanup);
    if (index < 0) return;
    cleanups.splice(index, 1);
    if (cleanups.length === 0 && !handling) {
      for (const [signal, listener] of Object.entries(listeners)) {
        Deno.removeSignalListener(signal as InterruptSignal, listener);
      }
    }
  };
}

/**
 * Registers `path` to be removed, recursively, when SIGINT or SIGTERM
 * interrupts this process, after its cleanups ran and every process below
 * it has ended. It does not install signal listeners of its own: pair it
 * with {@linkcode onInterrupt}.
 *
 * @returns A function that unregisters it.
 */
export function removeAtInterrupt(path: string): () => void {
  paths.add(path);
  return () => paths.delete(path);
}

/** A process, identified across pid reuse by its start time. */
export interface ProcessId {
  pid: number;
  /** Clock ticks after boot (field 22 of /proc/PID/stat). */
  start: string;
}

function stat(pid: number): { ppid: number; start: string } | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may hold spaces and parentheses: split after the last ")".
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(fields[1]), start: fields[19] };
  } catch {
    return undefined;
  }
}

/** Every process below `root`, children and their children, now. */
export function descendants(root: number): ProcessId[] {
  const children = new Map<number, ProcessId[]>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const pid = Number(entry.name);
      const info = stat(pid);
      if (!info) continue;
      const list = children.get(info.ppid) ?? [];
      list.push({ pid, start: info.start });
      children.set(info.ppid, list);
    }
  } catch {
    return []; // no /proc: nothing to sweep
  }
  const found: ProcessId[] = [];
  const queue = [root];
  while (queue.length > 0 && found.length < 100_000) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

/** Whether the process still runs (and is not a zombie). */
export function alive(process: ProcessId): boolean {
  try {
    const text = Deno.readTextFileSync(`/proc/${process.pid}/stat`);
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return fields[19] === process.start && fields[0] !== "Z";
  } catch {
    return false;
  }
}

function kill(process: ProcessId, signal: Deno.Signal): void {
  if (!alive(process)) return;
  try {
    Deno.kill(process.pid, signal);
  } catch {
    // gone meanwhile
  }
}

/**
 * Ends every process of `processes` still alive: SIGTERM, then SIGKILL
 * after `graceMs`.
 */
export async function terminate(processes: readonly ProcessId[], graceMs = 3_000): Promise<void> {
  const left = () => processes.filter(alive);
  if (left().length === 0) return;
  for (const process of left()) kill(process, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (left().length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (const process of left()) kill(process, "SIGKILL");
  const killed = Date.now() + 2_000;
  while (left().length > 0 && Date.now() < killed) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Settles with `promise`, or rejects after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
