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

-- domain.ratelimit.micros: Unix seconds as whole microseconds.
local function micros(t)
  return math.floor(t * 1e6 + 0.5)
end

-- a = b * q + r with 0 <= r < b, exact for integers below 2^53 (fmod is exact).
local function divmod(a, b)
  local r = math.fmod(a, b)
  if r < 0 then
    r = r + b
  end
  return (a - r) / b, r
end

-- GCRA in integers (domain.ratelimit): an arrival time is (t whole microseconds, p / limit of one).
-- rate_after: `units` more taken at now_us (from now_us when the bucket is full).
local function rate_after(t, p, units, limit, period_us, now_us)
  if t < now_us or (t == now_us and p <= 0) then
    t, p = now_us, 0
  end
  local carry, part = divmod(p + units * period_us, limit)
  return t + carry, part
end

-- How far (t, p) is ahead of now_us, in 1/limit of a microsecond (0 if behind).
local function rate_backlog(t, p, limit, now_us)
  return math.max(0, (t - now_us) * limit + p)
end

-- domain.ratelimit._view: whole units admissible now and the seconds until the bucket is full.
local function rate_view(limit, period_us, backlog)
  local room, remaining = period_us * limit - backlog, 0
  if room > 0 then
    remaining = divmod(room, period_us)
  end
  return math.min(limit, remaining), backlog / limit / 1e6
end

-- domain.ratelimit._drained: seconds until a backlog `excess` over full has drained (whole µs, + 1).
local function rate_wait(excess, limit)
  local q, r = divmod(excess, limit)
  if r > 0 then
    q = q + 1
  end
  return (q + 1) / 1e6
end
