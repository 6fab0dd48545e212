-- Spent and reserved (live holds only) summed over counters. ARGV: now. KEYS: (hash, zset) pairs.
local acc = {0, 0, 0, 0, 0, 0}
for k = 1, #KEYS, 2 do
  accumulate(acc, KEYS[k], KEYS[k + 1], ARGV[1])
end
return acc
