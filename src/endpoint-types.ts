// The endpoint state the stores keep per webhook (health, circuit, rate), and what settles report to
// and learn from it: part of the storage contract (./store.ts re-exports every name).

/** A webhook's attempts-per-second limit, as the store keeps it. */
export interface RateLimit {
  /** Attempts per second. */
  perSecond: number
  /** Attempts a webhook may make at once after being idle (the bucket's size). */
  burst: number
}

/**
 * What the engine's policy says about endpoints; a settle that reports an attempt applies it to the
 * shared endpoint state. `0` turns a rule off.
 */
export interface EndpointPolicy {
  /** Failed attempts in a row that open the circuit (0: no circuit). */
  failureThreshold: number
  /** The first cool-down of an open circuit. */
  cooldownMs: number
  /** The longest cool-down (it doubles after each failed probe). */
  maxCooldownMs: number
  /** Deliveries exhausted in a row that turn the webhook off (0: never). */
  disableAfterFailures: number
  /** Time failing (since the first failure of the run) that turns the webhook off (0: never). */
  disableAfterMs: number
}

/** What an attempt tells the endpoint state, reported with its settle. */
export interface EndpointReport {
  /** How the attempt went for the endpoint. */
  outcome: 'success' | 'failure'
  /** The delivery failed for good with this attempt (a health count). */
  exhausted?: boolean
  /** The rules to apply. */
  policy: EndpointPolicy
}

/**
 * An endpoint's shared state: health, circuit and rate. Every engine on the store reads and writes
 * the same, and it is kept across restarts.
 */
export interface EndpointState {
  /** Deliveries exhausted in a row since the last success. */
  consecutiveFailures: number
  /** When the first attempt of the current failing run failed (epoch ms), or `null` while healthy. */
  failingSince: number | null
  /** The last successful attempt (epoch ms), or `null`. */
  lastSuccessAt: number | null
  /** The last failed attempt (epoch ms), or `null`. */
  lastFailureAt: number | null
  /** Attempts failed in a row (what opens the circuit). */
  failedAttempts: number
  /** While the circuit is open: when it lets a probe through (epoch ms); `null` while closed. */
  openUntil: number | null
  /** The cool-down the circuit opened with last (it doubles after each failed probe). */
  cooldownMs: number
  /** A half-open probe is out until then (epoch ms), or `null`. */
  probeUntil: number | null
  /** The attempts-per-second limit kept for the webhook, or `null`. */
  rate: RateLimit | null
  /** Deliveries of the webhook that are not final. */
  open: number
}

/** One webhook in {@link Store.stats}. */
export interface WebhookStats extends EndpointState {
  webhookId: string
  company: string
  /** When the oldest open delivery was enqueued (epoch ms), or `null` with none open. */
  oldestOpenAt: number | null
}

/** What a settle changed in its endpoint's state: told to the engine whose settle made the change. */
export interface EndpointChange {
  /** The circuit opened (until when) or closed with this settle. */
  circuit?: { state: 'open'; until: number } | { state: 'closed' }
  /** The circuit is open (whoever opened it): nothing should be sent to the endpoint before this. */
  openUntil?: number
  /** The health rules say the webhook should be turned off now. */
  disable?: 'failures' | 'failing-too-long'
  /** Deliveries exhausted in a row after this settle. */
  consecutiveFailures: number
  /** When the failing run began, or `null`. */
  failingSince: number | null
}
