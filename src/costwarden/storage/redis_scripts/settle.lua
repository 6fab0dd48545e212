-- Settle one reservation once: release its live holds, charge `actual`, free its slots, correct
-- token rates. ARGV: ns, now, rid, marker ttl ms, orphan ttl ms, actual usd/tokens/requests,
-- write counters, slot keys (\31-separated), corrections (records of key, delta), caught-up counters
-- (\31-separated: their charge is also noted in pu pt pr; see domain.admission.Settlement).
local rid, now = ARGV[3], tonumber(ARGV[2])
if not redis.call('SET', NS .. 'settled:' .. rid, '1', 'NX', 'PX', ARGV[4]) then
  return 0
end
local actual = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
for _, name in ipairs(split(ARGV[9], '\31')) do
  local c, v, existed = load(name, now)
  local held = redis.call('HGET', c, 'h:' .. rid)
  if held then
    local _, u, t, r = parse_hold(held)
    v[4], v[5], v[6] = math.max(0, v[4] - u), math.max(0, v[5] - t), math.max(0, v[6] - r)
    redis.call('HDEL', c, 'h:' .. rid)
  end
  redis.call('HSET', c, 'su', int(v[1] + actual[1]), 'st', int(v[2] + actual[2]), 'sr', int(v[3] + actual[3]),
    'ru', int(v[4]), 'rt', int(v[5]), 'rr', int(v[6]))
  if not existed then -- the counter was gone (retained no longer, or Redis lost it)
    redis.call('PEXPIRE', c, ARGV[5])
  end
end
for _, name in ipairs(split(ARGV[12], '\31')) do -- charged above, and read by a catch-up too
  local c = NS .. 'c:' .. name
  redis.call('HINCRBY', c, 'pu', int(actual[1]))
  redis.call('HINCRBY', c, 'pt', int(actual[2]))
  redis.call('HINCRBY', c, 'pr', int(actual[3]))
end
for _, key in ipairs(split(ARGV[10], '\31')) do
  redis.call('ZREM', NS .. 's:' .. key, rid)
end
for _, record in ipairs(split(ARGV[11], '\30')) do
  local f = split(record, '\31')
  local key = NS .. 'r:' .. f[1]
  local v = redis.call('HMGET', key, 't', 'f', 'l', 'u', 'e')
  local limit, period_us, keep = tonumber(v[3]), tonumber(v[4]), num(v[5])
  if limit and keep > now then -- domain.ratelimit.adjust
    local now_us = micros(now)
    local t, p = rate_after(tonumber(v[1]), num(v[2]), tonumber(f[2]), limit, period_us, now_us)
    if t < now_us or (t == now_us and p <= 0) then
      t, p = now_us, 0
    end
    keep = math.max(keep, t / 1e6 + period_us / 1e6)
    redis.call('HSET', key, 't', int(t), 'f', int(p), 'e', f17(keep))
    redis.call('PEXPIRE', key, ttl_ms(keep - now))
  end
end
return 1
