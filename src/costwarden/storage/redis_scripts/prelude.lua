-- Shared by every costwarden script (prepended when loaded). Key names are built here from the
-- namespace (ARGV[1]), so a call packs a few arguments instead of dozens (3-10x cheaper in Python).
-- A budget counter is one HASH `<ns>c:<name>`: su st sr (spent), ru rt rr (reserved by live holds),
-- h:<rid> = "expires_at usd tokens requests" per hold, nx = no hold expires before this. USD in
-- integer nano-dollars: sums are exact below 2^53 (about $9M) per counter and per window.
local NS = ARGV[1]

local function num(v)
  return tonumber(v) or 0
end

local function f17(x)
  return string.format('%.17g', x)
end

local function int(x)
  return string.format('%.0f', x)
end

local function ttl_ms(seconds)
  return math.max(1000, math.ceil(seconds * 1000))
end

-- Fields are separated by \31 (unit separator), records by \30 (record separator).
local function split(s, sep)
  local out, start = {}, 1
  if s == '' then
    return out
  end
  while true do
    local i = string.find(s, sep, start, true)
    if not i then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

local function parse_hold(a)
  local e, u, t, r = string.match(a, '^(%S+) (%S+) (%S+) (%S+)$')
  return tonumber(e), tonumber(u), tonumber(t), tonumber(r)
end

-- Release the holds of `c` that expired at or before `now` from `v` (su st sr ru rt rr), floored
-- at zero like Amount.__sub__, and write back the reserved fields and the next expiry.
local function scan(c, v, now)
  local all = redis.call('HGETALL', c)
  local dead, nx = {}, nil
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'h:' then
      local e, u, t, r = parse_hold(all[i + 1])
      if e <= now then
        dead[#dead + 1] = all[i]
        v[4], v[5], v[6] = math.max(0, v[4] - u), math.max(0, v[5] - t), math.max(0, v[6] - r)
      elseif not nx or e < nx then
        nx = e
      end
    end
  end
  for i = 1, #dead, 500 do
    redis.call('HDEL', c, unpack(dead, i, math.min(#dead, i + 499)))
  end
  redis.call('HSET', c, 'ru', int(v[4]), 'rt', int(v[5]), 'rr', int(v[6]))
  if nx then
    redis.call('HSET', c, 'nx', f17(nx))
  else
    redis.call('HDEL', c, 'nx')
  end
  return nx
end

-- The counter `name` at `now` (expired holds released): its key, its six fields, whether it
-- exists, and its next hold expiry (nil: no holds).
local function load(name, now)
  local c = NS .. 'c:' .. name
  local raw = redis.call('HMGET', c, 'su', 'st', 'sr', 'ru', 'rt', 'rr', 'nx')
  local v = {num(raw[1]), num(raw[2]), num(raw[3]), num(raw[4]), num(raw[5]), num(raw[6])}
  local nx = tonumber(raw[7])
  if nx and nx <= now then
    nx = scan(c, v, now)
  end
  return c, v, raw[1] or raw[4] or raw[7], nx
end

-- domain.ratelimit.tolerance: float slack near `now` (limit roundings of 2^-51 * now, at most
-- half a unit).
local function tolerance(limit, interval, now)
  return math.min(interval / 2, math.max(1e-9, limit * math.abs(now) * 2 ^ -51))
end

-- domain.ratelimit._view: whole units admissible now and the seconds until the bucket is full.
local function rate_view(limit, period, interval, tat, now)
  local backlog = math.max(0.0, tat - now)
  local remaining = math.floor((period - backlog + tolerance(limit, interval, now)) / interval)
  return math.max(0, math.min(limit, remaining)), backlog
end
