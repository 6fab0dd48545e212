-- Set counters' spent fields to the ledger's figures, keeping holds. ARGV: ns, then per counter a
-- record of (name, spent usd, tokens, requests, ttl ms or '' to keep the current one).
for _, record in ipairs(split(ARGV[2], '\30')) do
  local f = split(record, '\31')
  local c = NS .. 'c:' .. f[1]
  redis.call('HSET', c, 'su', f[2], 'st', f[3], 'sr', f[4])
  if f[5] ~= '' then
    redis.call('PEXPIRE', c, f[5])
  end
end
return 1
