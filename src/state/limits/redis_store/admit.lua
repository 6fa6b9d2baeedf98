-- keypin: admit one login attempt, atomically for every replica.
-- KEYS: 1 client streak, 2 device streak, 3 client in-flight, 4 device in-flight,
--       5 all in-flight, 6 client rate, 7 global rate, 8 failure budget, 9 attack
-- ARGV: 1 attempt id, 2 has device (0/1), 3 lockout_after, 4/5 client rate per
--       (µs)/count, 6/7 global rate, 8/9 failure budget, 10 in-flight deadline
--       (µs), 11 wait while attempts are in flight (µs)
local device = ARGV[2] == '1'
local after = tonumber(ARGV[3])
local busy = tonumber(ARGV[11])

local attack = tonumber(redis.call('HGET', KEYS[9], 'u') or '0')
if not device and attack > now then
  return {'attack', attack - now}
end

-- Locked out, or as many attempts in flight as failures left before a lockout.
local function streak_wait(streak, flight)
  local s = redis.call('HMGET', streak, 'f', 'u')
  local failures, locked = tonumber(s[1] or '0'), tonumber(s[2] or '0')
  if locked > now then
    return locked - now
  end
  if locked > 0 then
    failures = 0
  end
  redis.call('ZREMRANGEBYSCORE', flight, '-inf', now)
  if after > 0 and failures + redis.call('ZCARD', flight) >= after then
    return busy
  end
  return 0
end

local wait = streak_wait(KEYS[1], KEYS[3])
if device then
  wait = math.max(wait, streak_wait(KEYS[2], KEYS[4]))
end
if wait > 0 then
  return {'wait', wait}
end

-- One more than the budget's room may be in flight: the failure that finds it
-- spent is the one that starts attack mode.
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
if not device then
  local budget = room(KEYS[8], tonumber(ARGV[8]), tonumber(ARGV[9]))
  if redis.call('ZCARD', KEYS[5]) > budget then
    return {'wait', busy}
  end
end

local c_per, g_per = tonumber(ARGV[4]), tonumber(ARGV[6])
local c_room, c_interval, c_tat = room(KEYS[6], c_per, tonumber(ARGV[5]))
local g_room, g_interval, g_tat = room(KEYS[7], g_per, tonumber(ARGV[7]))
if c_room < 1 or g_room < 1 then
  wait = 0
  if c_room < 1 then wait = wait_for_cell(c_per, c_interval, c_tat) end
  if g_room < 1 then wait = math.max(wait, wait_for_cell(g_per, g_interval, g_tat)) end
  return {'wait', wait}
end
spend(KEYS[6], c_interval, c_tat)
spend(KEYS[7], g_interval, g_tat)

local deadline = now + tonumber(ARGV[10])
local ttl = math.ceil(tonumber(ARGV[10]) / 1000)
local flights = {KEYS[3], KEYS[5]}
if device then
  flights[3] = KEYS[4]
end
for _, flight in ipairs(flights) do
  redis.call('ZADD', flight, whole(deadline), ARGV[1])
  redis.call('PEXPIRE', flight, ttl)
end
return {'ok', 0}
