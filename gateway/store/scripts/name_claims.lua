-- A part, not a script of its own: claim_name(...), for the scripts that claim names.
-- Claim a name in a room for an admission: the first of several shapes (name skeletons) that no
-- live claim of another admission holds, in one atomic step.
-- The room's claims are one hash: 'n:' .. shape -> '<expires ms> <holder>', and 'h:' .. host
-- shape -> such pairs, space-separated, for every host admission marking it. A claim is live
-- until its expiry (the server's clock), or until its holder's admission is revoked; one whose
-- admission is not stored yet holds meanwhile.
-- names_key the room's claims; holder the admission id; expires its expiry (ms since the epoch,
-- as text); admission_prefix the admission key prefix; host_shape, host ('1' for a host's
-- claim), first_yields ('1' when the first shape yields to a host's); shapes, best first.
-- Returns the (0-based) index of the shape claimed, or -1 when every one is held (nothing is
-- written then), and how many fields read did not parse. A field that does not parse is held
-- by someone else: a corrupt claim never frees a name for a look-alike. It is left in place
-- (only a host's claim rewrites the host marks it reads).
-- The admission keys are derived here, so this needs a single Redis node (or Sentinel), not
-- Cluster.
local function claim_name(names_key, holder, expires, admission_prefix, host_shape, host,
                          first_yields, shapes)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local corrupt = 0

  -- A field's {expiry, holder} pairs, or nil when it does not parse: "<digits> <holder>",
  -- repeated with single spaces.
  local function pairs_of(value)
    local found = {}
    local words = {}
    for word in string.gmatch(value, '%S+') do
      words[#words + 1] = word
    end
    if #words == 0 or #words % 2 == 1 or table.concat(words, ' ') ~= value then
      return nil
    end
    for j = 1, #words, 2 do
      if not string.match(words[j], '^%d+$') then
        return nil
      end
      found[#found + 1] = {words[j], words[j + 1]}
    end
    return found
  end

  local function live(ends, who)
    return tonumber(ends) > now and redis.call('HGET', admission_prefix .. who, 'revoked') ~= '1'
  end

  -- The live {expiry, holder} pairs of a field, and whether it did not parse.
  local function entries(field)
    local found = {}
    local value = redis.call('HGET', names_key, field)
    if value then
      local stored = pairs_of(value)
      if stored == nil then
        corrupt = corrupt + 1
        return found, true
      end
      for _, entry in ipairs(stored) do
        if live(entry[1], entry[2]) then
          found[#found + 1] = entry
        end
      end
    end
    return found, false
  end

  local function held(field)
    local found, unreadable = entries(field)
    if unreadable then
      return true
    end
    for _, entry in ipairs(found) do
      if entry[2] ~= holder then
        return true
      end
    end
    return false
  end

  local chosen = -1
  for i, shape in ipairs(shapes) do
    if not held('n:' .. shape)
        and not (i == 1 and first_yields == '1' and held('h:' .. host_shape)) then
      chosen = i
      break
    end
  end
  if chosen < 0 then
    return -1, corrupt
  end
  redis.call('HSET', names_key, 'n:' .. shapes[chosen], expires .. ' ' .. holder)
  if host == '1' then
    local marks = {}
    for _, entry in ipairs(entries('h:' .. host_shape)) do
      if entry[2] ~= holder then
        marks[#marks + 1] = entry[1] .. ' ' .. entry[2]
      end
    end
    marks[#marks + 1] = expires .. ' ' .. holder
    redis.call('HSET', names_key, 'h:' .. host_shape, table.concat(marks, ' '))
  end
  -- The hash lasts as long as its longest claim (an expiry in the past would delete it at once).
  local ttl = redis.call('PTTL', names_key)
  if tonumber(expires) > now and (ttl < 0 or now + ttl < tonumber(expires)) then
    redis.call('PEXPIREAT', names_key, expires)
  end
  -- Two fields picked at random go if nothing in them is live any more, so that a room in use
  -- for days does not keep every name it ever saw.
  local sample = redis.call('HRANDFIELD', names_key, 2, 'WITHVALUES')
  for j = 1, #sample, 2 do
    local stored = pairs_of(sample[j + 1])
    local lapsed = stored ~= nil
    for _, entry in ipairs(stored or {}) do
      if live(entry[1], entry[2]) then
        lapsed = false
      end
    end
    if lapsed then
      redis.call('HDEL', names_key, sample[j])
    end
  end
  return chosen - 1, corrupt
end
