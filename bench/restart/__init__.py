"""A game of quiz_loadtest through nginx while one of the server processes is replaced."""
