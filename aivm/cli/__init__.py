"""The click front end: parse options, call one core function, render the result."""
