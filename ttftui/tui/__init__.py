"""The Textual dashboard: one front end over the same events the recorder and the headless report
consume. The app drains its source on a timer and hands each panel the folded state and the one
analysis view of it; no panel measures anything or talks to the engine."""
