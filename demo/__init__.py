"""The duplicate-storm demo: fires bursts of duplicate requests at copies of the function
and shows, from what exists afterwards, that no key made a second order."""
