// @snowplow/browser-tracker 3.x with the legacy e-commerce plugin (addTrans, addItem, trackTrans).
import * as tracker from 'snowplow-browser-tracker-3'
import * as ecommerce from 'snowplow-browser-plugin-ecommerce-3'
window.snowplow3 = { ...tracker, ...ecommerce }
