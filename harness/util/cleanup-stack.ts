// Undo steps of a multi-step set-up, run last-in first-out when a later step fails, so a
// launch that fails half-way leaves nothing behind without nested try/catch per step.

export class CleanupStack {
  private readonly steps: (() => unknown)[] = [];

  /** Register the undo of a step that just succeeded. */
  defer(step: () => unknown): void {
    this.steps.push(step);
  }

  /** Run every undo step, newest first; a failing step does not stop the others. */
  async unwind(): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step();
      } catch {
        // best effort: the error that made us unwind is the one worth reporting
      }
    }
  }

  /** Run `body`; if it throws, unwind and rethrow. On success the steps are kept for later. */
  async guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      await this.unwind();
      throw error;
    }
  }
}
