-- Admit one request atomically: expire holds, check every budget, rate and slot; apply all or none.
-- ARGV: ns, now, rid, expires_at, estimate usd/tokens/requests, then three lists of records (below),
-- then the generation of the budget definitions the request was planned with ('' : not checked).
-- A generation other than `<ns>defs` (missing: 0) refuses before anything else: `0 g<generation>`.
-- The lists:
-- budgets (limit usd/tokens/requests or '', enforce 1/0, retain until (Unix s), seed key, write counter,
-- read counters...), rates (key, limit, period, cost) and slots (key, max_active). A rate is the
-- HASH `<ns>r:<key>` (TAT: t whole µs + f / l of one; l: limit, u: period µs, e: kept until, Unix s);
-- a slot the ZSET `<ns>s:<key>`
-- of leases scored by expiry. A budget whose seed key is missing from the HASH `<ns>seeded` (never
-- rebuilt, or Redis lost its state) refuses first: `u<i>`. Returns one space-separated string
-- (see RedisCounters._result).
if ARGV[11] ~= '' then
  local generation = redis.call('GET', NS .. 'defs') or '0'
  if generation ~= ARGV[11] then
    return '0 g' .. generation
  end
end

local nows, rid, exps = ARGV[2], ARGV[3], ARGV[4]
local now, expires_at = tonumber(nows), tonumber(exps)
local want = {tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])}
local refused = '-'
local out = {0, '-'}

local writes, unseeded = {}, nil
for i, record in ipairs(split(ARGV[8], '\30')) do
  local f = split(record, '\31')
  if not unseeded and redis.call('HEXISTS', NS .. 'seeded', f[6]) == 0 then
    unseeded = 'u' .. i
  end
  local acc = {0, 0, 0, 0, 0, 0}
  for j = 8, #f do
    local _, v = load(f[j], now)
    for u = 1, 6 do
      acc[u] = acc[u] + v[u]
    end
  end
  writes[i] = {f[7], tonumber(f[5]) - now}
  for u = 1, 3 do
    local limit = tonumber(f[u])
    if f[4] == '1' and refused == '-' and limit then
      if acc[u] >= limit or acc[u] + acc[u + 3] + want[u] > limit then
        refused = 'b' .. i
      end
    end
  end
  for u = 1, 6 do
    out[#out + 1] = int(acc[u])
  end
end

refused = unseeded or refused

local rates, working = {}, {}
local now_us = micros(now)
for i, record in ipairs(split(ARGV[9], '\30')) do
  local f = split(record, '\31')
  local key = NS .. 'r:' .. f[1]
  local limit, period, cost = tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
  local period_us = micros(period)
  local stored = redis.call('HMGET', key, 't', 'f', 'e')
  local r = {key = key, limit = limit, period = period, period_us = period_us}
  r.st, r.sf, r.keep = num(stored[1]), num(stored[2]), num(stored[3])
  local old = working[key] or {r.st, r.sf}
  local t, p = rate_after(old[1], old[2], cost, limit, period_us, now_us)
  local backlog, full = rate_backlog(t, p, limit, now_us), period_us * limit
  if backlog <= full then
    r.allowed, r.t, r.p, r.retry = 1, t, p, 0.0
    r.remaining, r.reset = rate_view(limit, period_us, backlog)
    working[key] = {t, p}
  else
    r.allowed, r.retry = 0, rate_wait(backlog - full, limit)
    r.remaining, r.reset = rate_view(limit, period_us, rate_backlog(old[1], old[2], limit, now_us))
    if refused == '-' then
      refused = 'r' .. i
    end
  end
  rates[i] = r
end

local slots, taken = {}, {}
for i, record in ipairs(split(ARGV[10], '\30')) do
  local f = split(record, '\31')
  local z = NS .. 's:' .. f[1]
  redis.call('ZREMRANGEBYSCORE', z, '-inf', nows)
  local active = redis.call('ZCARD', z) + (taken[z] or 0)
  if active >= tonumber(f[2]) then
    if refused == '-' then
      refused = 's' .. i
    end
  else
    taken[z] = (taken[z] or 0) + 1
  end
  slots[i] = {z, active}
end

if refused == '-' then
  out[1] = 1
  local hold = exps .. ' ' .. ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7]
  for _, w in ipairs(writes) do
    local c, v, _, nx = load(w[1], now)
    redis.call('HSET', c, 'ru', int(v[4] + want[1]), 'rt', int(v[5] + want[2]), 'rr', int(v[6] + want[3]),
      'h:' .. rid, hold, 'nx', f17(nx and math.min(nx, expires_at) or expires_at), 'sd', '1')
    redis.call('PEXPIRE', c, ttl_ms(w[2]))
  end
  for _, r in ipairs(rates) do
    if r.t then -- kept until the bucket is full again and this request could settle
      local keep = math.max(r.keep, r.t / 1e6 + r.period, expires_at)
      redis.call('HSET', r.key, 't', int(r.t), 'f', int(r.p), 'l', int(r.limit), 'u', int(r.period_us), 'e', f17(keep))
      redis.call('PEXPIRE', r.key, ttl_ms(keep - now))
      r.keep = keep
    end
  end
  for _, s in ipairs(slots) do
    redis.call('ZADD', s[1], exps, rid)
    local ttl = ttl_ms(expires_at - now + 1)
    if redis.call('PTTL', s[1]) < ttl then
      redis.call('PEXPIRE', s[1], ttl)
    end
  end
else
  out[2] = refused
  for _, r in ipairs(rates) do
    if r.allowed == 1 then -- nothing was taken: report the bucket as it stands
      r.remaining, r.reset = rate_view(r.limit, r.period_us, rate_backlog(r.st, r.sf, r.limit, now_us))
    end
  end
end

for _, r in ipairs(rates) do
  out[#out + 1] = r.allowed
  out[#out + 1] = int(r.remaining)
  out[#out + 1] = f17(r.reset)
  out[#out + 1] = f17(r.retry)
end
for _, s in ipairs(slots) do
  out[#out + 1] = s[2]
end
return table.concat(out, ' ')
