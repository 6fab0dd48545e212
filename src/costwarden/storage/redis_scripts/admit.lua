-- Admit one request atomically: expire holds, check every budget, rate and slot; apply all or none.
-- ARGV: now, rid, expires_at, estimate usd/tokens/requests, #budgets, #rates, #slots, then per
-- budget (#read, limit usd/tokens/requests or '', enforce 1/0, write ttl s), per rate (limit,
-- period, cost), per slot (max_active). KEYS: per budget its read counters' (hash, zset) pairs
-- and the write counter's pair, then one rate HASH (t: TAT, i: interval, p: period, e: kept
-- until) per rate, one lease ZSET per slot.
local nows, rid, exps = ARGV[1], ARGV[2], ARGV[3]
local now, expires_at = tonumber(nows), tonumber(ARGV[3])
local want = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
local nb, nr, ns = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local a, k = 10, 1
local refused = ''
local out = {0, ''}

local writes = {}
for i = 1, nb do
  local nread, enforce, ttl = tonumber(ARGV[a]), ARGV[a + 4] == '1', tonumber(ARGV[a + 5])
  local acc = {0, 0, 0, 0, 0, 0}
  for _ = 1, nread do
    accumulate(acc, KEYS[k], KEYS[k + 1], nows)
    k = k + 2
  end
  writes[i] = {KEYS[k], KEYS[k + 1], ttl}
  k = k + 2
  for u = 1, 3 do
    local limit = ARGV[a + u]
    if enforce and refused == '' and limit ~= '' then
      limit = tonumber(limit)
      if acc[u] >= limit or acc[u] + acc[u + 3] + want[u] > limit then
        refused = 'b' .. i
      end
    end
  end
  for u = 1, 6 do
    out[#out + 1] = acc[u]
  end
  a = a + 6
end

local rates, working = {}, {}
for i = 1, nr do
  local key = KEYS[k]
  local limit, period, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local interval = period / limit
  local stored = num(redis.call('HGET', key, 't'))
  local old = working[key] or stored
  local tat = math.max(old, now) + cost * interval
  local r = {key = key, limit = limit, period = period, interval = interval, stored = stored}
  if tat - now <= period + EPSILON then
    r.allowed, r.tat, r.retry = 1, tat, 0.0
    r.remaining, r.reset = rate_view(limit, period, interval, tat, now)
    working[key] = tat
  else
    r.allowed, r.retry = 0, tat - period - now
    r.remaining, r.reset = rate_view(limit, period, interval, old, now)
    if refused == '' then
      refused = 'r' .. i
    end
  end
  rates[i] = r
  k, a = k + 1, a + 3
end

local slots, taken = {}, {}
for i = 1, ns do
  local z = KEYS[k]
  redis.call('ZREMRANGEBYSCORE', z, '-inf', nows)
  local active = redis.call('ZCARD', z) + (taken[z] or 0)
  if active >= tonumber(ARGV[a]) then
    if refused == '' then
      refused = 's' .. i
    end
  else
    taken[z] = (taken[z] or 0) + 1
  end
  slots[i] = {z, active}
  k, a = k + 1, a + 1
end

if refused == '' then
  out[1] = 1
  local hold = ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6]
  for i = 1, nb do
    local c, z, ttl = writes[i][1], writes[i][2], ttl_ms(writes[i][3])
    purge(c, z, nows)
    for u = 1, 3 do
      redis.call('HINCRBY', c, FIELDS[u + 3], ARGV[3 + u])
    end
    redis.call('HSET', c, 'h:' .. rid, hold)
    redis.call('ZADD', z, exps, rid)
    redis.call('PEXPIRE', c, ttl)
    redis.call('PEXPIRE', z, ttl)
  end
  for _, r in ipairs(rates) do
    if r.tat then -- kept until the bucket is full again and this request could settle
      local keep = math.max(num(redis.call('HGET', r.key, 'e')), r.tat + r.period, expires_at)
      redis.call('HSET', r.key, 't', f17(r.tat), 'i', f17(r.interval), 'p', f17(r.period), 'e', f17(keep))
      redis.call('PEXPIRE', r.key, ttl_ms(keep - now))
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
      r.remaining, r.reset = rate_view(r.limit, r.period, r.interval, r.stored, now)
    end
  end
end

for _, r in ipairs(rates) do
  out[#out + 1] = r.allowed
  out[#out + 1] = r.remaining
  out[#out + 1] = f17(r.reset)
  out[#out + 1] = f17(r.retry)
end
for _, s in ipairs(slots) do
  out[#out + 1] = s[2]
end
return out
