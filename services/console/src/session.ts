// Who is signed in: tokens in memory only (never localStorage, sessionStorage
// or cookies), the access token renewed before it expires, sign-out.
import { createClient, type Interceptor, Code, ConnectError } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { AuthService } from './gen/roaming/auth/v1/auth_pb.js';

/** The JWT's claims, decoded for display and routing only: the server decides. */
export interface Claims {
  sub: string;
  roles: string[];
  booth?: string;
  lot?: string;
  exp?: number;
}

interface Tokens {
  access: string;
  refresh: string;
  claims: Claims;
}

let tokens: Tokens | undefined;
let timer: number | undefined;
let refreshing: Promise<void> | undefined;
/** When the access token expires, by this browser's clock (from `expires_in`). */
let expiresAt = 0;
const listeners = new Set<(reason: string | undefined) => void>();

/** Token calls need no bearer token, so they skip the session's interceptor. */
const authClient = createClient(
  AuthService,
  createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true }),
);

export function claims(): Claims | undefined {
  return tokens?.claims;
}

export function accessToken(): string | undefined {
  return tokens?.access;
}

/** Called with a reason (or undefined for a plain sign-out) when the session ends. */
export function onSignedOut(f: (reason: string | undefined) => void): void {
  listeners.add(f);
}

export function decodeClaims(jwt: string): Claims {
  const payload = jwt.split('.')[1];
  if (!payload) throw new Error('not a JWT');
  const b64 = payload.replace(/-/g, '+').replace(/_/g, '/');
  const json = new TextDecoder().decode(
    Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0)),
  );
  const raw = JSON.parse(json) as Record<string, unknown>;
  return {
    sub: String(raw['sub'] ?? ''),
    roles: Array.isArray(raw['roles']) ? raw['roles'].map(String) : [],
    booth: typeof raw['booth'] === 'string' ? raw['booth'] : undefined,
    lot: typeof raw['lot'] === 'string' ? raw['lot'] : undefined,
    exp: typeof raw['exp'] === 'number' ? raw['exp'] : undefined,
  };
}

export async function signIn(username: string, password: string): Promise<Claims> {
  const res = await authClient.issueToken({ username, password });
  tokens = {
    access: res.accessToken,
    refresh: res.refreshToken,
    claims: decodeClaims(res.accessToken),
  };
  schedule(Number(res.expiresIn));
  return tokens.claims;
}

/**
 * Renewal: a quarter of the token's life before it expires, at least 30 s
 * before (a 15-minute token is renewed after ~11 minutes, a 1-minute one after
 * 30 s). `expires_in` is used rather than `exp` so a wrong clock here does not
 * matter.
 */
function schedule(expiresInSecs: number): void {
  window.clearTimeout(timer);
  const lifeMs = Math.max(0, expiresInSecs * 1000);
  expiresAt = Date.now() + lifeMs;
  const delay = Math.max(5_000, lifeMs - Math.max(30_000, lifeMs / 4));
  timer = window.setTimeout(() => {
    void refresh().catch(() => undefined);
  }, delay);
}

/** A new access token now; concurrent callers share one RefreshToken call. */
export function refresh(): Promise<void> {
  if (!tokens) return Promise.reject(new ConnectError('signed out', Code.Unauthenticated));
  refreshing ??= (async () => {
    const current = tokens;
    try {
      if (!current) throw new ConnectError('signed out', Code.Unauthenticated);
      const res = await authClient.refreshToken({ refreshToken: current.refresh });
      if (tokens !== current) return; // signed out (or in again) meanwhile
      // Refresh tokens are single-use: the answer carries the next one (a
      // used one presented again ends the login, REFRESH_REUSED).
      tokens = {
        access: res.accessToken,
        refresh: res.refreshToken || current.refresh,
        claims: decodeClaims(res.accessToken),
      };
      schedule(Number(res.expiresIn));
    } catch (e) {
      const err = ConnectError.from(e);
      if (err.code === Code.Unauthenticated && tokens === current) {
        signOut('Your session has ended. Please sign in again.');
      } else if (tokens === current) {
        // The gateway could not be reached: try again shortly while the token lasts.
        timer = window.setTimeout(() => void refresh().catch(() => undefined), 10_000);
      }
      throw err;
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

export function signOut(reason?: string): void {
  window.clearTimeout(timer);
  tokens = undefined;
  expiresAt = 0;
  for (const f of listeners) f(reason);
}

// Timers sleep in background tabs: catch up when the tab is shown again.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && tokens && Date.now() > expiresAt - 30_000) {
    void refresh().catch(() => undefined);
  }
});

/**
 * Adds the bearer token; a unary call answered UNAUTHENTICATED (the token
 * expired, e.g. the tab slept through its renewal) is retried once after a
 * refresh, so the person never notices. Streams are re-opened by their owner
 * (see watch.ts): their request cannot be replayed here.
 */
export const bearer: Interceptor = (next) => async (req) => {
  const token = tokens?.access;
  if (token) req.header.set('authorization', `Bearer ${token}`);
  if (req.stream || !token) return next(req);
  try {
    return await next(req);
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code !== Code.Unauthenticated || !tokens) throw e;
    await refresh();
    req.header.set('authorization', `Bearer ${tokens.access}`);
    return next(req);
  }
};
