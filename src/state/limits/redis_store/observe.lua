-- keypin: the cluster's state as one replica mirrors it, once a second.
-- KEYS: 1 attack, 2 locked streaks. Returns attack mode's time left (µs, 0 when
-- off), its failures, and the streaks locked out now.
local a = redis.call('HMGET', KEYS[1], 'u', 'n')
local left = math.max(tonumber(a[1] or '0') - now, 0)
local locked = redis.call('ZCOUNT', KEYS[2], '(' .. whole(now), '+inf')
return {left, tonumber(a[2] or '0'), locked}
