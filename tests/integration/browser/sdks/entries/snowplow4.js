// @snowplow/browser-tracker 4.x and its e-commerce plugin as a shop bundles them.
import * as tracker from '@snowplow/browser-tracker'
import * as ecommerce from '@snowplow/browser-plugin-snowplow-ecommerce'
window.snowplow4 = { ...tracker, ...ecommerce }
