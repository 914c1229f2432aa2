/* The Karakuri industrial arm (robot/descriptions/industrial_arm) as this firmware drives
 * it: joint order, joint-name hash and limits exactly as RobotSpec reports them (checked by
 * tests/firmware/test_fw_host.py), plus the simulated servo's gains and inertias. */
#ifndef KK_BOARD_INDUSTRIAL_ARM_H
#define KK_BOARD_INDUSTRIAL_ARM_H

#define KK_ROBOT_N 7
/* SHA-256("shoulder_pan\nshoulder_lift\nelbow\nwrist_1\nwrist_2\nwrist_3\nfinger_left")[0:4] */
#define KK_ROBOT_JOINT_HASH 0x179FA1F6u
#define KK_ROBOT_LOWER {-3.1416f, -3.1416f, -2.8f, -3.1416f, -3.1416f, -3.1416f, 0.0f}
#define KK_ROBOT_UPPER {3.1416f, 0.0f, 2.8f, 3.1416f, 3.1416f, 3.1416f, 0.04f}
#define KK_ROBOT_VELOCITY {3.1416f, 3.1416f, 3.1416f, 3.1416f, 3.1416f, 3.1416f, 0.1f}
#define KK_ROBOT_EFFORT {150.0f, 150.0f, 150.0f, 28.0f, 28.0f, 28.0f, 60.0f}
#define KK_ROBOT_STOP_DECEL {15.0f, 15.0f, 15.0f, 25.0f, 25.0f, 25.0f, 1.0f}
#define KK_ROBOT_HOME {0.0f, -1.5708f, 1.5708f, -1.5708f, -1.5708f, 0.0f, 0.04f}
/* Simulated servo: inertia = effort limit / (4 x stop decel), so the effort limit allows four
 * times the stop's deceleration (kg m^2, or kg for the finger); a critically damped PD loop
 * at 100 rad/s (10 ms time constant) on that inertia. */
#define KK_ROBOT_INERTIA {2.5f, 2.5f, 2.5f, 0.28f, 0.28f, 0.28f, 15.0f}
#define KK_ROBOT_SERVO_WN 100.0f

#endif
