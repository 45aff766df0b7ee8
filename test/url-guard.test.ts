import { describe, expect, it } from 'vitest'
import { UnsafeUrlError, checkUrl, createWebhooks, privateHostReason } from 'cotwebhook'

const COMPANY = '625bc5429a54e8868bd89be2'

function refusal(url: string, policy?: { allowPrivateNetworks?: boolean }): UnsafeUrlError {
  let caught: unknown
  try {
    checkUrl(url, policy)
  } catch (error) {
    caught = error
  }
  expect(caught, `${url} should be refused`).toBeInstanceOf(UnsafeUrlError)
  return caught as UnsafeUrlError
}

// Only a private destination is cured by allowPrivateNetworks; the message suggests it there alone.
function expectRefused(url: string, reason: string, policy?: { allowPrivateNetworks?: boolean }, hint = true): UnsafeUrlError {
  const error = refusal(url, policy)
  expect(error.code).toBe('unsafe_url')
  expect(error.status).toBe(400)
  expect(error.url).toBe(url)
  expect(error.reason).toContain(reason)
  expect(error.message).toMatch(/^url: /)
  expect(error.message).toContain(reason)
  if (hint) expect(error.message).toContain('allowPrivateNetworks')
  else expect(error.message).not.toContain('allowPrivateNetworks')
  return error
}

describe('schemes and credentials are refused whatever the policy', () => {
  const cases: [string, string][] = [
    ['ftp://example.com/hook', 'scheme ftp is not allowed (http or https only)'],
    ['javascript:alert(1)', 'scheme javascript is not allowed (http or https only)'],
    ['file:///etc/passwd', 'scheme file is not allowed (http or https only)'],
    ['localhost:4000/x', 'scheme localhost is not allowed (http or https only); did you mean http://localhost:4000/x?'],
    ['hooks.example.com:8443', 'scheme hooks.example.com is not allowed (http or https only); did you mean http://hooks.example.com:8443?'],
    ['ws://example.com/hook', 'scheme ws is not allowed (http or https only)'],
    ['https://user:secret@example.com/hook', 'credentials in the URL are not allowed'],
    ['https://user@example.com/hook', 'credentials in the URL are not allowed'],
    ['https://:secret@example.com/hook', 'credentials in the URL are not allowed'],
  ]
  for (const [url, reason] of cases) {
    it(`${url} is refused by default: ${reason}`, () => {
      expectRefused(url, reason, undefined, false)
    })
    it(`${url} is still refused with allowPrivateNetworks: true`, () => {
      expectRefused(url, reason, { allowPrivateNetworks: true }, false)
    })
  }

  it('a string that is not an absolute URL is refused as such', () => {
    expectRefused('/hooks/cotalker', 'is not an absolute URL', undefined, false)
  })
})

describe('non-public destinations are refused by default', () => {
  // [url, the words the reason must contain]
  const cases: [string, string][] = [
    ['http://localhost/hook', 'localhost is a loopback name'],
    ['http://localhost:8080/hook', 'localhost is a loopback name'],
    ['http://foo.localhost/hook', 'foo.localhost is a loopback name'],
    ['http://LocalHost/hook', 'localhost is a loopback name'],
    ['http://127.0.0.1/hook', '127.0.0.1 is a loopback address'],
    ['http://127.0.0.1:9/hook', '127.0.0.1 is a loopback address'],
    ['http://127.1/hook', '127.0.0.1 is a loopback address'],
    ['http://0x7f000001/hook', '127.0.0.1 is a loopback address'],
    ['http://2130706433/hook', '127.0.0.1 is a loopback address'],
    ['http://017700000001/hook', '127.0.0.1 is a loopback address'],
    ['http://127.255.255.254/hook', 'loopback address'],
    ['http://10.0.0.1/hook', '10.0.0.1 is a private (RFC 1918) address'],
    ['http://10.255.255.255/hook', 'private (RFC 1918)'],
    ['http://172.16.0.1/hook', '172.16.0.1 is a private (RFC 1918) address'],
    ['http://172.31.255.254/hook', 'private (RFC 1918)'],
    ['http://192.168.1.1/hook', '192.168.1.1 is a private (RFC 1918) address'],
    ['http://169.254.169.254/latest/meta-data/', '169.254.169.254 is a link-local address'],
    ['http://100.64.0.1/hook', '100.64.0.1 is a carrier-grade NAT address'],
    ['http://[::127.0.0.1]/hook', 'is an IPv4-compatible address'],
    ['http://[::a9fe:a9fe]/hook', 'is an IPv4-compatible address'],
    ['http://[::8.8.8.8]/hook', 'is an IPv4-compatible address'],
    ['http://0.0.0.0/hook', '0.0.0.0 is an unspecified address'],
    ['http://224.0.0.1/hook', '224.0.0.1 is a multicast address'],
    ['http://255.255.255.255/hook', '255.255.255.255 is a broadcast address'],
    ['http://[::1]/hook', '::1 is a loopback address'],
    ['http://[::]/hook', ':: is an unspecified address'],
    ['http://[fe80::1]/hook', 'fe80::1 is a link-local address'],
    ['http://[fc00::1]/hook', 'fc00::1 is a unique-local address'],
    ['http://[fd12:3456::1]/hook', 'unique-local address'],
    ['http://[::ffff:127.0.0.1]/hook', 'loopback address'],
    ['http://[::ffff:10.0.0.1]/hook', 'private (RFC 1918) address'],
    ['http://[::ffff:169.254.169.254]/hook', 'link-local address'],
  ]
  for (const [url, reason] of cases) {
    it(`${url} is refused: ${reason}`, () => {
      expectRefused(url, reason)
    })
    it(`${url} is allowed with allowPrivateNetworks: true`, () => {
      expect(checkUrl(url, { allowPrivateNetworks: true }).href).toBe(new URL(url).href)
    })
  }
})

describe('public destinations are allowed', () => {
  for (const url of [
    'https://example.com',
    'https://example.com/hooks/cotalker?x=1',
    'http://93.184.216.34',
    'http://93.184.216.34:8080/hook',
    'https://[2606:4700::1111]/hook',
    'http://172.15.255.255/hook',
    'http://172.32.0.1/hook',
    'http://100.63.255.255/hook',
    'http://100.128.0.1/hook',
    'http://[::ffff:93.184.216.34]/hook',
    'https://localhost.example.com/hook',
  ]) {
    it(`${url} is allowed and returned parsed`, () => {
      const parsed = checkUrl(url)
      expect(parsed).toBeInstanceOf(URL)
      expect(parsed.href).toBe(new URL(url).href)
    })
  }
})

describe('privateHostReason', () => {
  it('names the rule for a private host', () => {
    expect(privateHostReason('10.0.0.1')).toBe('10.0.0.1 is a private (RFC 1918) address')
    expect(privateHostReason('localhost')).toBe('localhost is a loopback name')
    expect(privateHostReason('[::1]')).toBe('::1 is a loopback address')
    expect(privateHostReason('169.254.169.254')).toBe('169.254.169.254 is a link-local address')
  })

  it('is undefined for public addresses and for names to be resolved', () => {
    expect(privateHostReason('example.com')).toBeUndefined()
    expect(privateHostReason('93.184.216.34')).toBeUndefined()
    expect(privateHostReason('[2606:4700::1111]')).toBeUndefined()
  })
})

describe('the registry applies the URL policy', () => {
  it('create with a loopback URL fails with UnsafeUrlError under the default options, and nothing is stored', async () => {
    const hooks = createWebhooks()
    try {
      const error = await hooks.registry
        .create(COMPANY, { name: 'Local', code: 'local', trigger: 'create-edit-delete-task', url: 'http://127.0.0.1:8080/hook' })
        .then(
          () => undefined,
          (e: unknown) => e,
        )
      expect(error).toBeInstanceOf(UnsafeUrlError)
      expect((error as UnsafeUrlError).code).toBe('unsafe_url')
      expect((error as UnsafeUrlError).message).toContain('127.0.0.1 is a loopback address')
      expect((error as UnsafeUrlError).message).toContain('allowPrivateNetworks')
      expect((await hooks.registry.list(COMPANY)).count).toBe(0)
    } finally {
      await hooks.close()
    }
  })

  it('update to a private URL fails under the default options and the webhook keeps its URL', async () => {
    const hooks = createWebhooks()
    try {
      const { webhook } = await hooks.registry.create(COMPANY, {
        name: 'Public',
        code: 'public',
        trigger: 'create-edit-delete-user',
        url: 'https://example.com/hook',
      })
      await expect(hooks.registry.update(COMPANY, webhook._id, { url: 'http://192.168.0.10/hook' })).rejects.toMatchObject({
        code: 'unsafe_url',
        reason: '192.168.0.10 is a private (RFC 1918) address',
      })
      const stored = await hooks.registry.get(COMPANY, webhook._id)
      expect(stored.url).toBe('https://example.com/hook')
      expect(stored.__v).toBe(0)
    } finally {
      await hooks.close()
    }
  })

  it('allowPrivateNetworks: true lets a loopback URL through but still refuses a bad scheme or credentials', async () => {
    const hooks = createWebhooks({ allowPrivateNetworks: true })
    try {
      const { webhook } = await hooks.registry.create(COMPANY, {
        name: 'Local',
        code: 'local',
        trigger: 'create-edit-delete-task',
        url: 'http://127.0.0.1:8080/hook',
      })
      expect(webhook.url).toBe('http://127.0.0.1:8080/hook')
      await expect(
        hooks.registry.create(COMPANY, { name: 'Ftp', code: 'ftp', trigger: 'logout-user', url: 'ftp://127.0.0.1/hook' }),
      ).rejects.toBeInstanceOf(UnsafeUrlError)
      await expect(
        hooks.registry.create(COMPANY, { name: 'Creds', code: 'creds', trigger: 'logout-user', url: 'http://a:b@127.0.0.1/hook' }),
      ).rejects.toBeInstanceOf(UnsafeUrlError)
      await expect(hooks.registry.update(COMPANY, webhook._id, { url: 'file:///etc/passwd' })).rejects.toBeInstanceOf(UnsafeUrlError)
      expect((await hooks.registry.list(COMPANY)).count).toBe(1)
      expect((await hooks.registry.get(COMPANY, webhook._id)).url).toBe('http://127.0.0.1:8080/hook')
    } finally {
      await hooks.close()
    }
  })
})
