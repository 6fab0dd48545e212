-- Set counters' spent fields to the ledger's figures, keeping holds. KEYS: (hash, zset) pairs.
-- ARGV: per counter spent usd/tokens/requests and a ttl in ms ('' keeps the current one).
for i = 1, #KEYS / 2 do
  local c, z, a = KEYS[2 * i - 1], KEYS[2 * i], 4 * i - 3
  redis.call('HSET', c, 'su', ARGV[a], 'st', ARGV[a + 1], 'sr', ARGV[a + 2])
  if ARGV[a + 3] ~= '' then
    redis.call('PEXPIRE', c, ARGV[a + 3])
    redis.call('PEXPIRE', z, ARGV[a + 3])
  end
end
return #KEYS / 2
