-- Shared by every costwarden script (prepended when loaded): numbers, hold expiry, GCRA view.
-- A counter is a HASH (su st sr: spent; ru rt rr: reserved; h:<rid>: "usd tokens requests" of a
-- live hold) beside a ZSET of its holds' reservation ids scored by expires_at. USD in nano-dollars.
local EPSILON = 1e-9
local FIELDS = {'su', 'st', 'sr', 'ru', 'rt', 'rr'}

local function num(v)
  return tonumber(v) or 0
end

local function f17(x)
  return string.format('%.17g', x)
end

local function ttl_ms(seconds)
  return math.max(1000, math.ceil(seconds * 1000))
end

-- Take `u t r` off the reserved fields of counter `c`, floored at zero like Amount.__sub__.
local function release(c, u, t, r)
  local amounts = {u, t, r}
  for i, field in ipairs({'ru', 'rt', 'rr'}) do
    if amounts[i] ~= 0 and redis.call('HINCRBY', c, field, -amounts[i]) < 0 then
      redis.call('HSET', c, field, 0)
    end
  end
end

local function parse_hold(a)
  local u, t, r = string.match(a, '^(%S+) (%S+) (%S+)$')
  return tonumber(u), tonumber(t), tonumber(r)
end

-- Release the holds of counter `c` whose expiry (in ZSET `z`) is at or before `now`.
local function purge(c, z, now)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #gone == 0 then
    return
  end
  local u, t, r = 0, 0, 0
  for _, rid in ipairs(gone) do
    local a = redis.call('HGET', c, 'h:' .. rid)
    if a then
      local hu, ht, hr = parse_hold(a)
      u, t, r = u + hu, t + ht, r + hr
      redis.call('HDEL', c, 'h:' .. rid)
    end
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  release(c, u, t, r)
end

-- Purge then add this counter's six fields into `acc`.
local function accumulate(acc, c, z, now)
  purge(c, z, now)
  local v = redis.call('HMGET', c, unpack(FIELDS))
  for i = 1, 6 do
    acc[i] = acc[i] + num(v[i])
  end
end

-- domain.ratelimit._view: whole units admissible now and the seconds until the bucket is full.
local function rate_view(limit, period, interval, tat, now)
  local backlog = math.max(0.0, tat - now)
  local remaining = math.floor((period - backlog + EPSILON) / interval)
  return math.max(0, math.min(limit, remaining)), backlog
end
