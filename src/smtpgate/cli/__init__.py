"""The command-line face: typer commands that call the services and print for humans or JSON."""
