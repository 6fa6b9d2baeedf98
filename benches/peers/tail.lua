-- wrk done-hook for compare.sh's TAIL=1: the latency percentiles past p50 and
-- the share of requests slower than a few bounds, on one line (stderr).
-- wrk's Lua API gives percentiles only, so each share is found by bisecting
-- the percentile whose latency crosses the bound.
local bounds_us = { 700, 1000, 2000, 5000 }

local function share_over(latency, bound)
  local lo, hi = 0, 100
  for _ = 1, 30 do
    local mid = (lo + hi) / 2
    if latency:percentile(mid) > bound then hi = mid else lo = mid end
  end
  return 100 - lo
end

done = function(summary, latency, requests)
  local out = "tail:"
  for _, p in ipairs({ 90, 98, 99, 99.5, 99.9 }) do
    out = out .. string.format(" p%g=%dus", p, latency:percentile(p))
  end
  for _, b in ipairs(bounds_us) do
    out = out .. string.format(" >%dus=%.2f%%", b, share_over(latency, b))
  end
  io.stderr:write(out .. "\n")
end
