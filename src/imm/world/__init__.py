"""The built-in default: seeded arithmetic task families and a tiny Llama that ships with the tool."""
