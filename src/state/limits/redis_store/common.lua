-- keypin: helpers shared by its scripts (prepended to each). Times are
-- microseconds of the Redis server's clock, one clock for every replica.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- A number as Redis stores it: whole, never in exponent notation.
local function whole(x)
  return string.format('%.0f', x)
end

-- GCRA over the theoretical arrival time in `key`: the cells that may be spent
-- now, and the interval between cells.
local function room(key, per, count)
  local interval = per / count
  local tat = tonumber(redis.call('GET', key) or '0')
  local left = per - math.max(tat - now, 0)
  if left < interval then
    return 0, interval, tat
  end
  return math.floor(left / interval), interval, tat
end

-- Spend one cell of `key` (room was checked); the key lives until it is full again.
local function spend(key, interval, tat)
  local next = math.max(tat, now) + interval
  redis.call('SET', key, whole(next), 'PX', math.ceil((next - now) / 1000) + 1)
end

-- Time until `key` has room for one more cell.
local function wait_for_cell(per, interval, tat)
  return math.max(tat - now - (per - interval), 1)
end
