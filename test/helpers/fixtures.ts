import { createWebhooks, objectId, type Signer, type Transport, type WebhookInput, type Webhooks, type WebhooksOptions } from 'cotwebhook'

export const COMPANY = '625be93a286ef83c1c0e845f'
export const OTHER_COMPANY = '625be93a286ef83c1c0e8460'
export const TASK_GROUP = '6261612a8f1e99002e5c8cce'

/** The transport and signer engines get unless a test says otherwise (undefined: fetch, WebCrypto). */
let defaultTransport: Transport | undefined
let defaultSigner: Signer | undefined
export function useTransport(transport: Transport | undefined, signer?: Signer): void {
  defaultTransport = transport
  defaultSigner = signer
}

/** An engine for loopback receivers, closed by `closeAll()`. */
const open: Webhooks[] = []
export function engine(options: WebhooksOptions = {}): Webhooks {
  const hooks = createWebhooks({
    allowPrivateNetworks: true,
    onError: (e) => console.error(e),
    ...(defaultTransport ? { transport: defaultTransport } : {}),
    ...(defaultSigner ? { signer: defaultSigner } : {}),
    ...options,
  })
  open.push(hooks)
  return hooks
}
export async function closeAll(): Promise<void> {
  await Promise.all(open.splice(0).map((h) => h.close()))
}

export function taskWebhook(url: string, overrides: Partial<Record<keyof WebhookInput, unknown>> = {}): WebhookInput {
  // Tests override any field, mistakes included: the runtime checks are what they test.
  return { name: 'Work orders', code: `wo_${objectId()}`, trigger: 'create-edit-delete-task', url, ...overrides } as WebhookInput
}

export function taskEvent(n = 0, company = COMPANY) {
  return {
    company,
    type: 'COTTask' as const,
    event: 'create' as const,
    data: { _id: objectId(), n, taskGroup: TASK_GROUP },
  }
}

/** The `n` of the task in a delivered body. */
export function nOf(body: string): number {
  return (JSON.parse(body) as { data: { n: number } }).data.n
}
