from releaseosd.app.cli import main

main(prog_name="releaseosd")
