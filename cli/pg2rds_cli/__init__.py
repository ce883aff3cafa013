"""The operator CLI: start, follow, cut over and draw migrations in an AWS account (or in the local
endpoint that ``pg2rds serve --local`` exposes). Nothing here imports the emulator."""
