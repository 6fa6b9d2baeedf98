-- keypin: revoke a session for every replica: remembered until its session's
-- end (for replicas that join later) and announced to those running now.
-- KEYS: 1 revocations. ARGV: 1 session id, 2 its end (Unix seconds), 3 channel
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', math.floor(now / 1000000))
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('EXPIREAT', KEYS[1], last + 1)
redis.call('PUBLISH', ARGV[3], ARGV[2] .. ' ' .. ARGV[1])
return 1
