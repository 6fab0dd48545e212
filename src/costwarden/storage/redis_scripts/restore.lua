-- Seed budgets from the ledger, keeping holds and never lowering a counter. ARGV: ns, then per
-- counter a record of (seed key, counter, ledger usd, tokens, requests, ttl ms); counter '' marks
-- the seed key only. A seeded counter
-- (`sd`, set by admit and by this script) becomes max(spent, ledger) per unit; one a settle created
-- after Redis lost its state holds only what settled since: spent + ledger. Then each seed key is
-- marked in `<ns>seeded`, and its budget admits again. ARGV[3], unless '', is the caller's Unix time
-- of a change of the budget definitions: `<ns>defs` (their generation, no TTL) moves on to
-- max(defs + 1, that millisecond) (domain.admission.next_generation). Returns the generation.
for _, record in ipairs(split(ARGV[2], '\30')) do
  local f = split(record, '\31')
  if f[2] ~= '' then
    local c = NS .. 'c:' .. f[2]
    local raw = redis.call('HMGET', c, 'su', 'st', 'sr', 'sd')
    local spent = {}
    for u = 1, 3 do
      local now, ledger = num(raw[u]), tonumber(f[u + 2])
      spent[u] = int(raw[4] and math.max(now, ledger) or now + ledger)
    end
    redis.call('HSET', c, 'su', spent[1], 'st', spent[2], 'sr', spent[3], 'sd', '1')
    redis.call('PEXPIRE', c, f[6])
  end
  redis.call('HSET', NS .. 'seeded', f[1], '1')
end
local generation = redis.call('GET', NS .. 'defs') or '0'
if ARGV[3] ~= '' then
  generation = int(math.max(tonumber(generation) + 1, math.floor(tonumber(ARGV[3]) * 1000)))
  redis.call('SET', NS .. 'defs', generation)
end
return generation
