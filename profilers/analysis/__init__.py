"""Analysis of stored points (no torch): noise and ratios, rankings, run comparisons, roofline arithmetic."""
