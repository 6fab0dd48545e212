-- Seed budgets from the ledger, keeping holds and never lowering a counter. ARGV: ns, then per
-- counter a record of (seed key, counter, ledger usd, tokens, requests, ttl ms, mode); counter ''
-- marks the seed key only. Each counter keeps the highest ledger figure it was given (lu lt lr),
-- net of the charges settles noted as read by a catch-up too (pu pt pr).
-- Mode 'c' (catch-up, see domain.admission.BudgetSeed): the counter gains what the net figure has
-- beyond that, and nothing is marked seeded. Otherwise a seeded counter
-- (`sd`, set by admit and by this script) becomes max(spent, ledger) per unit; one a settle created
-- after Redis lost its state holds only what settled since: spent + ledger. Then each seed key is
-- marked in `<ns>seeded`, and its budget admits again. ARGV[3], unless '', is the caller's Unix time
-- of a change of the budget definitions: `<ns>defs` (their generation, no TTL) moves on to
-- max(defs + 1, that millisecond) (domain.admission.next_generation). Returns the generation.
local marked = nil -- the seed key marked last: a seed's counters come together, marked once
for _, record in ipairs(split(ARGV[2], '\30')) do
  local f = split(record, '\31')
  local catch_up = f[7] == 'c'
  if f[2] ~= '' then
    local c = NS .. 'c:' .. f[2]
    local raw = redis.call('HMGET', c, 'su', 'st', 'sr', 'sd', 'lu', 'lt', 'lr', 'pu', 'pt', 'pr')
    local spent, seen = {}, {}
    for u = 1, 3 do
      local now, ledger, last = num(raw[u]), tonumber(f[u + 2]), num(raw[u + 4])
      local net = ledger - num(raw[u + 7]) -- settles charged the rest already (pu pt pr)
      if catch_up then
        spent[u] = int(now + math.max(0, net - last))
      else
        spent[u] = int(raw[4] and math.max(now, ledger) or now + ledger)
      end
      seen[u] = int(math.max(last, net))
    end
    if catch_up then
      redis.call('HSET', c, 'su', spent[1], 'st', spent[2], 'sr', spent[3], 'lu', seen[1], 'lt', seen[2], 'lr', seen[3])
    else
      redis.call('HSET', c, 'su', spent[1], 'st', spent[2], 'sr', spent[3], 'lu', seen[1], 'lt', seen[2], 'lr', seen[3],
        'sd', '1')
    end
    redis.call('PEXPIRE', c, f[6])
  end
  if not catch_up and f[1] ~= marked then
    redis.call('HSET', NS .. 'seeded', f[1], '1')
    marked = f[1]
  end
end
local generation = redis.call('GET', NS .. 'defs') or '0'
if ARGV[3] ~= '' then
  generation = int(math.max(tonumber(generation) + 1, math.floor(tonumber(ARGV[3]) * 1000)))
  redis.call('SET', NS .. 'defs', generation)
end
return generation
