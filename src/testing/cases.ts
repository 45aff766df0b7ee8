/** The cases of the suite, by stable name: what `skip` takes. */
export const CONFORMANCE_CASES = [
  'inserts and reads webhooks, scoped to their company',
  'refuses a duplicate code within a company only',
  'lets exactly one of two concurrent inserts of one code win',
  'lists webhooks in creation order with filters, pages and a count',
  'indexes active webhooks by company and trigger',
  'updates only at the expected version',
  'keeps a webhook’s secrets as given, retiring ones included',
  'keeps stored state apart from the values it is given and returns',
  'enqueues atomically and hands out due deliveries only',
  'makes a repeated idempotency key a no-op, per company',
  'never hands one delivery to two concurrent claimers',
  'hands out one delivery per webhook at a time, oldest first, when ordered',
  'hands out every due delivery when not ordered',
  'lets a lease expire: the delivery is claimable again and the old holder can no longer settle',
  'records attempts, schedules retries and finishes deliveries',
  'keeps a held lease through the retry wait',
  'releases a lease without an attempt',
  'tells when the next delivery becomes claimable',
  'lists a webhook’s deliveries newest first with pages',
  'prunes old final deliveries and keys, never open ones',
  'hands out the earliest due first, then in enqueue order, when the limit cuts',
  'writes once for concurrent enqueues with one idempotency key',
  'tells the next wake time of any delivery when not ordered',
  'refuses a settle after the held lease ran out',
  'keeps the idempotency key of an event with an open delivery',
  'holds back an older delivery while a younger one of its webhook is out',
] as const

/** One case name of {@link CONFORMANCE_CASES}. */
export type ConformanceCase = (typeof CONFORMANCE_CASES)[number]
