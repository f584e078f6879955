// @segment/analytics-node, unmodified, with `host` the only change: what a shop's Node server
// sends. Usage: node send.mjs <collector URL> <write key> <anonymous id>
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, anonymousId] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, flushAt: 3, maxRetries: 3 })
analytics.on('error', (error) => { console.error('delivery failed', error); process.exitCode = 1 })
analytics.identify({ userId: 'erik', anonymousId, traits: { plan: 'pro' } })
analytics.track({ userId: 'erik', anonymousId, event: 'Order Completed',
  properties: { order_id: 'o-9', revenue: 120, currency: 'EUR' } })
analytics.group({ userId: 'erik', anonymousId, groupId: 'acme', traits: { employees: 40 } })
await analytics.closeAndFlush({ timeout: 10000 })
