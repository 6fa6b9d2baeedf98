-- keypin: settle an admitted attempt, atomically for every replica.
-- KEYS: 1 client streak, 2 device streak, 3 client in-flight, 4 device in-flight,
--       5 all in-flight, 6 failure budget, 7 attack, 8 locked streaks
-- ARGV: 1 attempt id, 2 has device (0/1), 3 verdict (failed/succeeded/unanswered),
--       4 lockout_after, 5 lockout_base (µs), 6 lockout_max (µs), 7/8 failure
--       budget per (µs)/count, 9 attack_cooldown (µs), 10 streak memory (ms),
--       11 attack channel
local device = ARGV[2] == '1'
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if device then
  redis.call('ZREM', KEYS[4], ARGV[1])
end
if ARGV[3] ~= 'failed' then
  return {0, 0, 0}
end

local after, base, max = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

-- One more failure in `streak`; the lockout it starts (µs), or 0.
local function extend(streak)
  local s = redis.call('HMGET', streak, 'f', 'l', 'u')
  local failures, lockouts, locked = tonumber(s[1] or '0'), tonumber(s[2] or '0'), tonumber(s[3] or '0')
  if locked > 0 and locked <= now then
    locked, failures = 0, 0
  end
  failures = failures + 1
  local started = 0
  if after > 0 and failures >= after then
    lockouts, failures = lockouts + 1, 0
    started = math.min(base * 2 ^ (lockouts - 1), max)
    locked = now + started
    redis.call('ZADD', KEYS[8], whole(locked), streak)
    redis.call('PEXPIRE', KEYS[8], math.ceil(max / 1000) + 1000)
  end
  redis.call('HSET', streak, 'f', failures, 'l', lockouts, 'u', whole(locked))
  redis.call('PEXPIRE', streak, ARGV[10])
  return started
end

local client = extend(KEYS[1])
local dev = 0
if device then
  dev = extend(KEYS[2])
end

local budget, interval, tat = room(KEYS[6], tonumber(ARGV[7]), tonumber(ARGV[8]))
local started = 0
if budget >= 1 then
  spend(KEYS[6], interval, tat)
else
  -- Over budget: attack mode, extended for as long as failures continue.
  local cooldown = tonumber(ARGV[9])
  if tonumber(redis.call('HGET', KEYS[7], 'u') or '0') <= now then
    started = 1
    redis.call('HSET', KEYS[7], 'n', 0)
  end
  redis.call('HINCRBY', KEYS[7], 'n', 1)
  redis.call('HSET', KEYS[7], 'u', whole(now + cooldown))
  redis.call('PEXPIRE', KEYS[7], math.ceil(cooldown / 1000) + 60000)
  if started == 1 then
    redis.call('PUBLISH', ARGV[11], 'on')
  end
end
return {client, dev, started}
