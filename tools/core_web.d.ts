// The one Web-standard type the runtime-neutral core names in its public API
// (a lease's `signal`), declared for the type-check of the core against a
// plain ES lib (`deno task check`). Every runtime the library targets (Deno,
// Bun, Node, browsers) provides `AbortSignal`; only the members the core
// uses are declared, so using any other fails this check.
interface AbortSignal {
  readonly aborted: boolean;
  // `any`, as in the DOM's declaration, which this one merges with in a full check.
  // deno-lint-ignore no-explicit-any
  readonly reason: any;
  throwIfAborted(): void;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}
