-- Spent and reserved (live holds only) summed over counters. ARGV: ns, now, seed key, counters
-- (\31-separated). `u` when the budget is not seeded (see admit.lua).
if redis.call('HEXISTS', NS .. 'seeded', ARGV[3]) == 0 then
  return 'u'
end
local acc = {0, 0, 0, 0, 0, 0}
for _, name in ipairs(split(ARGV[4], '\31')) do
  local _, v = load(name, tonumber(ARGV[2]))
  for u = 1, 6 do
    acc[u] = acc[u] + v[u]
  end
end
for u = 1, 6 do
  acc[u] = int(acc[u])
end
return table.concat(acc, ' ')
