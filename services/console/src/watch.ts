// Live reservation views: one WatchReservation stream per reservation shown,
// at most MAX_STREAMS at once (a browser keeps ~6 HTTP/1.1 connections per
// host and each stream holds one, so some stay free for ordinary calls).
// Every stream ends when its screen is left (the screen's AbortSignal).
import { Code } from '@connectrpc/connect';
import { view } from './api.js';
import { describe, isAborted } from './errors.js';
import type { ReservationView } from './gen/roaming/view/v1/view_pb.js';
import { refresh } from './session.js';

export const MAX_STREAMS = 4;

export type LiveState = 'live' | 'connecting' | 'paused' | 'off';

interface Watch {
  abort: AbortController;
}

/**
 * Watches the reservations the screen asks for. `want(ids)` is called with
 * the ids worth watching in the order of preference (visible, not final);
 * the first MAX_STREAMS are watched.
 */
export class Watcher {
  private readonly watches = new Map<string, Watch>();

  constructor(
    private readonly signal: AbortSignal,
    private readonly onView: (v: ReservationView) => void,
    private readonly onState: (id: string, state: LiveState, why?: string) => void,
  ) {
    signal.addEventListener('abort', () => {
      for (const w of this.watches.values()) w.abort.abort();
      this.watches.clear();
    });
  }

  want(ids: string[]): void {
    if (this.signal.aborted) return;
    const chosen = new Set(ids.slice(0, MAX_STREAMS));
    for (const [id, w] of this.watches) {
      if (!chosen.has(id)) {
        w.abort.abort();
        this.watches.delete(id);
        this.onState(id, 'paused');
      }
    }
    for (const id of ids.slice(MAX_STREAMS)) this.onState(id, 'paused');
    for (const id of chosen) {
      if (!this.watches.has(id)) this.start(id);
    }
  }

  watching(id: string): boolean {
    return this.watches.has(id);
  }

  private start(id: string): void {
    const abort = new AbortController();
    this.watches.set(id, { abort });
    void this.loop(id, abort.signal);
  }

  private async loop(id: string, signal: AbortSignal): Promise<void> {
    let backoff = 1_000;
    let authRetried = false;
    while (!signal.aborted) {
      this.onState(id, 'connecting');
      try {
        for await (const res of view.watchReservation({ reservationId: id }, { signal })) {
          if (res.reservation) {
            this.onState(id, 'live');
            this.onView(res.reservation);
          }
          backoff = 1_000;
          authRetried = false;
        }
        // The server ended the stream (e.g. its connection aged out): reopen.
        await sleep(1_000, signal);
      } catch (e) {
        if (signal.aborted || isAborted(e)) return;
        const p = describe(e);
        if (p.code === Code.Unauthenticated && !authRetried) {
          authRetried = true;
          try {
            await refresh();
            continue;
          } catch {
            return;
          }
        }
        if (p.reason === 'WATCH_LIMIT' || p.code === Code.NotFound || p.code === Code.PermissionDenied) {
          this.onState(id, 'off', p.message);
          if (p.retryAfterMs === undefined) {
            this.watches.delete(id);
            return;
          }
        } else {
          this.onState(id, 'connecting');
        }
        const wait = p.retryAfterMs ?? backoff;
        backoff = Math.min(backoff * 2, 30_000);
        await sleep(wait, signal);
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = window.setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        window.clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
