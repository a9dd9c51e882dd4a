// Merges the operator's settings into zwave-js-ui's settings.json before it
// starts. zwave-js-ui reads its broker, credentials and serial port only from
// that file (which its UI also writes), so the file is edited in place: what the
// user set in the UI stays, except the keys the SensorGateway's spec decides.
//
// HOMELAB_ZUI_SETTINGS is JSON with four parts, each { section: { key: ... } }:
//   defaults  - written only where the file has no value (a first start);
//   set       - always written: the spec decides them;
//   fromEnv   - always written, from the named environment variables (the
//               credentials, which come from a Secret and never appear here);
//   fromFiles - always written, with the content of the named files (TLS
//               material, which zwave-js-ui wants inline).
'use strict'
const fs = require('fs')
const path = require('path')

function fail(message) {
  console.error('homelab settings: ' + message)
  process.exit(1)
}

const store = process.env.HOMELAB_ZUI_STORE
if (!store) fail('HOMELAB_ZUI_STORE is not set')
let plan
try {
  plan = JSON.parse(process.env.HOMELAB_ZUI_SETTINGS || '')
} catch (e) {
  fail('HOMELAB_ZUI_SETTINGS is not JSON: ' + e.message)
}

const file = path.join(store, 'settings.json')
let settings = {}
if (fs.existsSync(file)) {
  const text = fs.readFileSync(file, 'utf8')
  if (text.trim() !== '') {
    try {
      settings = JSON.parse(text)
    } catch (e) {
      // Never replace a file we cannot read: it holds the user's network keys.
      fail(file + ' is not valid JSON (' + e.message + '); repair it, or move it away to start from the operator\'s settings')
    }
  }
}
if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) {
  fail(file + ' does not hold a JSON object; repair it, or move it away')
}

function section(name) {
  const s = settings[name]
  if (s === null || typeof s !== 'object' || Array.isArray(s)) {
    settings[name] = {}
  }
  return settings[name]
}

function each(part, write) {
  for (const [name, keys] of Object.entries(plan[part] || {})) {
    const target = section(name)
    for (const [key, value] of Object.entries(keys)) write(target, key, value)
  }
}

each('defaults', (t, k, v) => {
  if (t[k] === undefined || t[k] === null) t[k] = v
})
each('set', (t, k, v) => {
  t[k] = v
})
each('fromEnv', (t, k, variable) => {
  const v = process.env[variable]
  if (v === undefined) fail('environment variable ' + variable + ' for ' + k + ' is not set')
  t[k] = v
})
each('fromFiles', (t, k, name) => {
  try {
    t[k] = fs.readFileSync(name, 'utf8')
  } catch (e) {
    fail('cannot read ' + name + ' for ' + k + ': ' + e.message)
  }
})

fs.mkdirSync(store, { recursive: true })
// Written beside the file and renamed over it: a pod killed half-way leaves the
// old file whole.
const temporary = file + '.homelab-tmp'
fs.writeFileSync(temporary, JSON.stringify(settings, null, 2) + '\n', { mode: 0o600 })
fs.renameSync(temporary, file)
console.log('homelab settings: ' + file + ' now has the broker, client name, base topic and radio from the SensorGateway')
