"""The benchmark suite: the function's figures as ratios to a bare functions-framework
function, measured in one run, on one machine, with one load generator (`python -m bench`)."""
