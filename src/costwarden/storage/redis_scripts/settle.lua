-- Settle one reservation once: release its live holds, charge `actual`, free its slots, correct
-- token rates. ARGV: now, rid, marker ttl ms, orphan ttl ms, actual usd/tokens/requests, #writes,
-- #slots, #corrections, then one delta per correction. KEYS: the settled marker, per write
-- counter its (hash, zset), one zset per slot, one rate hash per correction.
local nows, rid = ARGV[1], ARGV[2]
local now = tonumber(nows)
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  return 0
end
local nw, ns, nc = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local k = 2
for _ = 1, nw do
  local c, z = KEYS[k], KEYS[k + 1]
  local existed = redis.call('EXISTS', c) == 1
  purge(c, z, nows)
  local held = redis.call('HGET', c, 'h:' .. rid)
  if held then
    release(c, parse_hold(held))
    redis.call('HDEL', c, 'h:' .. rid)
    redis.call('ZREM', z, rid)
  end
  for u = 1, 3 do
    redis.call('HINCRBY', c, FIELDS[u], ARGV[4 + u])
  end
  if not existed then -- the counter was gone (retained no longer, or Redis lost it)
    redis.call('PEXPIRE', c, ARGV[4])
  end
  k = k + 2
end
for _ = 1, ns do
  redis.call('ZREM', KEYS[k], rid)
  k = k + 1
end
for i = 1, nc do
  local key = KEYS[k]
  local v = redis.call('HMGET', key, 't', 'i', 'p', 'e')
  local interval, period, keep = tonumber(v[2]), tonumber(v[3]), num(v[4])
  if interval and keep > now then -- domain.ratelimit.adjust
    local tat = math.max(now, math.max(tonumber(v[1]), now) + tonumber(ARGV[10 + i]) * interval)
    keep = math.max(keep, tat + period)
    redis.call('HSET', key, 't', f17(tat), 'e', f17(keep))
    redis.call('PEXPIRE', key, ttl_ms(keep - now))
  end
  k = k + 1
end
return 1
