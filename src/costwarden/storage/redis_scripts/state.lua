-- Spent and reserved (live holds only) summed over counters. ARGV: ns, now, counters (\31-separated).
local acc = {0, 0, 0, 0, 0, 0}
for _, name in ipairs(split(ARGV[3], '\31')) do
  local _, v = load(name, tonumber(ARGV[2]))
  for u = 1, 6 do
    acc[u] = acc[u] + v[u]
  end
end
for u = 1, 6 do
  acc[u] = int(acc[u])
end
return table.concat(acc, ' ')
