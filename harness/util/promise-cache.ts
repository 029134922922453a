// A promise per key, made once and shared by every caller; a rejected one is dropped, so a caller
// who fixes the cause (a rebuilt binary, say) can ask again in the same process.

export class PromiseCache<K, V> {
  private readonly entries = new Map<K, Promise<V>>();

  get(key: K, make: () => Promise<V>): Promise<V> {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = make();
      this.entries.set(key, entry);
      entry.catch(() => this.entries.delete(key));
    }
    return entry;
  }
}
