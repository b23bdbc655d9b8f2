from shipyard.cli import main

main(prog_name="shipyard")
